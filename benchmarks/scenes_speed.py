"""Render rate of the scenes world (images + masks + captions + QA), single process.

    python benchmarks/scenes_speed.py [image_size] [max_objects]

Target: >= 5,000 images/s on one core at 64 px with 1-3 objects. Measured on the 2-core dev box:
64 px 1-3 objects ~12,500/s idle (8-10k with the other core busy); 64 px 1-6 objects ~4,000/s;
224 px 1-3 objects ~3,800/s.
"""

import sys
import time

from vlkit.data.scenes import Scenes, ScenesConfig


def measure(image_size: int = 64, max_objects: int = 3, count: int = 5000) -> float:
    """Images per second for `count` consecutive scenes (after a warm-up that fills the stencil cache)."""
    scenes = Scenes(ScenesConfig(image_size=image_size, max_objects=max_objects))
    for i in range(200):
        scenes.scene(i)
    start = time.perf_counter()
    for i in range(count):
        scenes.scene(10_000 + i)
    return count / (time.perf_counter() - start)


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    max_objects = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"scenes {size}x{size}, 1-{max_objects} objects: {measure(size, max_objects):,.0f} images/s")
