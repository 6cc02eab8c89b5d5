"""Make the fonts in resources/fonts/ from Debian's Noto packages (see resources/fonts/README.md).

    apt-get download fonts-noto-core fonts-noto-cjk
    for deb in fonts-noto-*.deb; do dpkg-deb -x "$deb" noto; done
    python scripts/subset_fonts.py noto/usr/share/fonts

Needs fontTools (`pip install fonttools`, in a venv of its own: it is not a project dependency).
Devanagari and Arabic are copied whole; the others are cut down with fontTools' subsetter,
keeping every OpenType layout feature of the glyphs that stay.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

from fontTools import subset

ROOT = Path(__file__).resolve().parent.parent
FONTS = ROOT / "resources" / "fonts"
PARALLEL = ROOT / "resources" / "languages" / "parallel.json"

LATIN = [
    "U+0000-024F",  # Basic Latin, Latin-1, Latin Extended-A and -B
    "U+0250-036F",  # IPA, spacing modifiers, combining diacritics
    "U+0370-052F",  # Greek, Cyrillic
    "U+1E00-1EFF",  # Latin Extended Additional (Vietnamese among others)
    "U+2000-20CF",  # punctuation, super- and subscripts, currency
    "U+2100-218F",  # letterlike symbols, number forms
    "U+FFFD",
]
# What the app's own labels use beyond Noto Sans: arrows, minus, ↵ ⇥ ␍ ␣ ■ ▶ ★ ✓ ✗ and kin.
MATH = ["U+2190-21FF", "U+2200-22FF"]
SYMBOLS = ["U+2300-23FF", "U+2400-243F", "U+25A0-25FF", "U+2600-26FF", "U+2700-27BF"]
HAN = [
    "U+3000-303F",  # CJK symbols and punctuation
    "U+3040-30FF",  # kana
    "U+FF00-FFEF",  # full-width forms
]


def gb2312_level1() -> str:
    """The 3,755 most common Han characters (GB 2312 level 1, rows 16-55)."""
    chars = []
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            with contextlib.suppress(UnicodeDecodeError):  # row 55 ends at cell 89
                chars.append(bytes([row, cell]).decode("gb2312"))
    return "".join(chars)


def cut(source: Path, target: str, unicodes: list[str], text: str = "", index: int = 0) -> None:
    """Write the subset as FONTS/<family>/<target>, the family being the name before the dash."""
    out = FONTS / target.split("-")[0] / target
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [
        str(source),
        f"--output-file={out}",
        f"--unicodes={','.join(unicodes)}",
        f"--text={text}",
        f"--font-number={index}",
        "--layout-features=*",
        "--name-IDs=*",
    ]
    subset.main(args)


def main(argv: list[str]) -> int:
    source = Path(argv[0])
    noto, cjk = source / "truetype" / "noto", source / "opentype" / "noto"
    for name in ("NotoSansDevanagari-Regular.ttf", "NotoSansArabic-Regular.ttf"):
        out = FONTS / name.split("-")[0] / name
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(noto / name, out)
    for weight in ("Regular", "Bold"):
        cut(noto / f"NotoSans-{weight}.ttf", f"NotoSans-{weight}.ttf", LATIN)
    cut(noto / "NotoSansMath-Regular.ttf", "NotoSansMath-Regular.ttf", MATH)
    cut(noto / "NotoSansSymbols2-Regular.ttf", "NotoSansSymbols2-Regular.ttf", SYMBOLS)
    parallel = PARALLEL.read_text(encoding="utf-8")
    chinese = "".join(s["Chinese"] for s in json.loads(parallel)["sentences"])
    # Face 2 of the collection is Simplified Chinese (JP, KR, SC, TC, HK, then the Mono ones).
    cut(cjk / "NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", HAN,
        text=gb2312_level1() + chinese, index=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
