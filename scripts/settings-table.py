"""Write the settings table into README.md from the declarations (make settings-table)."""

from pathlib import Path

from server.config import settings_table

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
start = text.index("| setting | default | what it is |")
end = text.index("\n\n", start)
readme.write_text(text[:start] + settings_table().rstrip("\n") + text[end:])
