"""Write beside, then swap (rsmoe/files.py): an error inside the block leaves what was there."""
import pytest

from rsmoe.files import swapped_folder, written_file


def test_written_file_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "sub" / "a.json"
    with written_file(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        tmp.write_text("1")
    assert path.read_text() == "1"
    with pytest.raises(RuntimeError), written_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "1" and sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_swapped_folder_replaces_on_success_and_keeps_the_old_folder_on_error(tmp_path):
    folder = tmp_path / "model"
    with swapped_folder(folder) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError), swapped_folder(folder) as tmp:
        (tmp / "w").write_text("half")
        raise RuntimeError("killed")
    assert (folder / "w").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["model"]
    with swapped_folder(folder) as tmp:
        (tmp / "v").write_text("2")
    assert sorted(p.name for p in folder.iterdir()) == ["v"] and [p.name for p in tmp_path.iterdir()] == ["model"]
