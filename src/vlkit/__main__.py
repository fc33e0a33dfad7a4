from vlkit.cli import main

main()
