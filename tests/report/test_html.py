from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from iconolens.report.html import MAX_TABLE_ROWS, write_run_report


def test_report_links_every_figure_and_renders_tables(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / "summary.csv").write_text("method,global_iou\ncam,0.5\ngradcam,0.25\n", encoding="utf-8")
    (run / "report" / "curves").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(run / "report" / "curves" / "global_iou.png")
    Image.new("RGB", (4, 4)).save(run / "metrics" / "hist.png")

    page = write_run_report(run)
    text = page.read_text(encoding="utf-8")

    assert page == run / "report" / "index.html"
    assert "<td>cam</td><td>0.500</td>" in text and "<td>gradcam</td><td>0.250</td>" in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == 2
    for source in sources:
        assert (page.parent / source).resolve().is_file()


def test_long_tables_are_linked_not_dumped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    rows = "\n".join(f"c{i},{i}" for i in range(MAX_TABLE_ROWS + 7))
    (run / "metrics" / "long_table.csv").write_text("class,value\n" + rows + "\n", encoding="utf-8")
    (run / "metrics" / "short.csv").write_text("class,value\nPeter,1\n", encoding="utf-8")
    page = write_run_report(run)
    text = page.read_text(encoding="utf-8")
    assert text.count("<tr>") == 2  # the short table's header and row; nothing of the long one
    assert f"{MAX_TABLE_ROWS + 7} rows: too many to read here" in text
    assert "<h3>long table <small>" in text
    links = re.findall(r'<a href="([^"]+\.csv)">', text)
    assert sorted(Path(link).name for link in set(links)) == ["long_table.csv", "short.csv"]
    for link in links:
        assert (page.parent / link).resolve().is_file()


def test_empty_run_gives_a_page_that_says_so(tmp_path: Path) -> None:
    text = write_run_report(tmp_path / "empty").read_text(encoding="utf-8")
    assert "no results yet" in text


def test_files_the_collection_could_not_use_are_listed_with_their_reason(tmp_path: Path) -> None:
    from iconolens.data.dataset_json import save_dataset_json
    from iconolens.data.records import Dataset, Problem, Sample

    image = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(image)
    dataset = Dataset((Sample("ok", image, ("a",)),), ("a", "b"),
                      problems=(Problem("broken <1>.jpg", "the file is truncated"),))
    save_dataset_json(dataset, tmp_path / "run" / "dataset.json")
    text = write_run_report(tmp_path / "run").read_text(encoding="utf-8")
    assert "<td>broken &lt;1&gt;.jpg</td><td>the file is truncated</td>" in text
    assert "1 file(s) of the collection could not be used" in text
