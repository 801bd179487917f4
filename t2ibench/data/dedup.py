"""Near-duplicate removal by perceptual hash.

Method: `imagehash` (PyPI) 64-bit hashes, ``phash`` (DCT of the 32x32 greyscale image, 8x8 low
frequencies against their median) by default, or ``dhash`` (horizontal gradient signs of a 9x8
greyscale image). Two images are near-duplicates when the Hamming distance of their hashes is at most
``max_distance`` (default 4 of 64 bits). The first image seen is kept, later ones are removed.

Lookup is exact, not approximate: by the pigeonhole principle two 64-bit hashes within distance d
agree exactly on at least one of d+1 disjoint bit bands, so an index per band finds every candidate
and the full distance is checked on those only (multi-index hashing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

HASH_BITS = 64
METHODS = ("phash", "dhash")


def image_hash(image, method: str = "phash") -> int:
    import imagehash

    fn = {"phash": imagehash.phash, "dhash": imagehash.dhash}[method]
    bits = fn(image, hash_size=8).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass
class DuplicateIndex:
    """Hashes seen so far, searchable for any hash within `max_distance` bits."""

    max_distance: int = 4
    hashes: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not 0 <= self.max_distance < HASH_BITS:
            raise ValueError(f"max_distance must be in [0, {HASH_BITS})")
        n = self.max_distance + 1
        edges = [round(i * HASH_BITS / n) for i in range(n + 1)]
        self._bands = [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:])]
        self._tables: list[dict[int, list[int]]] = [{} for _ in self._bands]
        seen, self.hashes = self.hashes, []
        for h in seen:
            self.add(h)

    def find(self, h: int) -> int | None:
        """A stored hash within `max_distance` of `h`, or None."""
        for (shift, mask), table in zip(self._bands, self._tables):
            for cand in table.get((h >> shift) & mask, ()):
                if hamming(cand, h) <= self.max_distance:
                    return cand
        return None

    def add(self, h: int) -> None:
        self.hashes.append(h)
        for (shift, mask), table in zip(self._bands, self._tables):
            table.setdefault((h >> shift) & mask, []).append(h)

    def check_and_add(self, h: int) -> bool:
        """True when `h` duplicates a stored hash (then it is not stored), else store it and return False."""
        if self.find(h) is not None:
            return True
        self.add(h)
        return False
