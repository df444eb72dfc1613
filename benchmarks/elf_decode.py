"""Why rseq_gen.elf decodes headers, sections, segments and symbol tables
by hand: the same reads through pyelftools, on the same files.

    python benchmarks/elf_decode.py FILE...

For each file, best of 7 (symbol lookups: best of 3): the header, section
and program header tables as rseq_gen.elf.ElfFile reads them against
pyelftools' ``iter_sections``/``iter_segments`` building the same rows, and
four ``.dynsym`` lookups (``find_symbols``) against ``get_symbol_by_name``.
Nothing here is a test: the numbers go in elf.py's docstring by hand.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "toolkit") not in sys.path:
    sys.path.insert(0, str(ROOT / "toolkit"))

from elftools.elf.elffile import ELFFile  # noqa: E402

from rseq_gen.elf import ElfFile, Section, map_file  # noqa: E402

NAMES = ["__rseq_abi", "__rseq_offset", "rseq_register_current_thread", "malloc"]


def best_ms(fn, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main(paths: list[str]) -> int:
    for path in paths:
        data = map_file(path)

        def stream():
            return ELFFile(io.BytesIO(data) if isinstance(data, bytes) else data)

        def by_hand():
            e = ElfFile(data, path)
            return e.sections, e.segments

        def by_pyelftools():
            e = stream()
            secs = [Section(i, s.name, s["sh_type"], s["sh_flags"], s["sh_addr"], s["sh_offset"],
                            s["sh_size"], s["sh_addralign"], s["sh_entsize"], s["sh_link"], s["sh_info"])
                    for i, s in enumerate(e.iter_sections())]
            return secs, [(g["p_type"], g["p_offset"], g["p_vaddr"]) for g in e.iter_segments()]

        def symbols_by_hand():
            return ElfFile(data, path).find_symbols(NAMES, ".dynsym", "rseq")

        def symbols_by_pyelftools():
            dynsym = stream().get_section_by_name(".dynsym")
            return [dynsym.get_symbol_by_name(n) for n in NAMES] if dynsym else []

        print(f"{path} ({len(data) / 1e6:.1f} MB): headers+sections+segments: by hand "
              f"{best_ms(by_hand):.2f} ms, pyelftools {best_ms(by_pyelftools):.2f} ms; "
              f"{len(NAMES)} .dynsym lookups: by hand {best_ms(symbols_by_hand, 3):.2f} ms, "
              f"pyelftools {best_ms(symbols_by_pyelftools, 3):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
