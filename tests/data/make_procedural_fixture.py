"""Writes tests/data/procedural_periodic.npz: embedded images of the periodic classes.

Run once, from the repository root, with jaxgen/data/procedural.py as it was at commit 592cb28
(before the 3-pixel period floor) importable as `procedural`; see README_procedural.md.
"""

import numpy as np

from jaxgen.data import procedural

PERIODIC = (3, 4, 5, 9)  # stripes, rings, checkers, dot grid


def indices(count):
  return [c + 10 * k for c in PERIODIC for k in range(count)]


def main():
  np.savez_compressed(
      'tests/data/procedural_periodic.npz',
      res32=np.stack([procedural.render(i, 32)[0] for i in indices(10)]),
      res64=np.stack([procedural.render(i, 64)[0] for i in indices(2)]))


if __name__ == '__main__':
  main()
