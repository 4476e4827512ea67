"""Write the settings table into docs/settings.md from the declarations (make settings-table)."""

from pathlib import Path

from server.config import settings_table

page = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
text = page.read_text()
start = text.index("| setting | default | what it is |")
end = text.index("\n\n", start)
page.write_text(text[:start] + settings_table().rstrip("\n") + text[end:])
