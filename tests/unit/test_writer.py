"""The writer: atomic replace, explicit modes, unchanged files untouched, own stale files only."""

import os

from fangen import writer


def test_writes_with_explicit_modes_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        out = writer.write_tree(str(tmp_path), {
            "run/systemd/network/10-fangen-br.netdev": "a\n",
            "run/fangen/f/dnsmasq.conf": "b\n"})
    finally:
        os.umask(old)
    assert out["written"] == ["run/fangen/f/dnsmasq.conf",
                              "run/systemd/network/10-fangen-br.netdev"]
    assert os.stat(tmp_path / "run/systemd/network/10-fangen-br.netdev").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "run/fangen/f/dnsmasq.conf").st_mode & 0o777 == 0o644


def test_unchanged_file_is_not_rewritten(tmp_path):
    files = {"run/systemd/network/10-fangen-br.netdev": "a\n"}
    writer.write_tree(str(tmp_path), files)
    path = tmp_path / "run/systemd/network/10-fangen-br.netdev"
    inode = os.stat(path).st_ino
    out = writer.write_tree(str(tmp_path), files)
    assert out["unchanged"] == list(files) and out["written"] == []
    assert os.stat(path).st_ino == inode
    out = writer.write_tree(str(tmp_path), {list(files)[0]: "b\n"})
    assert out["written"] == list(files)
    assert os.stat(path).st_ino != inode           # replaced by rename, never written in place
    assert path.read_text() == "b\n"


def test_stale_removal_touches_only_owned_files(tmp_path):
    netdir = tmp_path / "run/systemd/network"
    netdir.mkdir(parents=True)
    (netdir / "10-netplan-eth0.network").write_text("x")
    (netdir / "10-fangen-old.netdev").write_text("x")
    (netdir / "10-fangen-old.network.d").mkdir()
    (netdir / "10-fangen-old.network.d/50-slice.conf").write_text("x")
    (netdir / "10-fangen-br.network.d").mkdir()
    (netdir / "10-fangen-br.network.d/50-slice.conf").write_text("x")
    out = writer.write_tree(str(tmp_path), {"run/systemd/network/10-fangen-br.network": "n\n"})
    assert sorted(out["removed"]) == ["run/systemd/network/10-fangen-old.netdev",
                                      "run/systemd/network/10-fangen-old.network.d"]
    assert sorted(os.listdir(netdir)) == ["10-fangen-br.network", "10-fangen-br.network.d",
                                          "10-netplan-eth0.network"]


def test_no_stale_removal_when_asked_not_to(tmp_path):
    netdir = tmp_path / "run/systemd/network"
    netdir.mkdir(parents=True)
    (netdir / "10-fangen-old.netdev").write_text("x")
    writer.write_tree(str(tmp_path), {}, remove_stale=False)
    assert (netdir / "10-fangen-old.netdev").exists()


def test_no_temporary_files_left(tmp_path):
    writer.write_tree(str(tmp_path), {"run/systemd/network/10-fangen-a.network": "x\n"})
    assert [n for n in os.listdir(tmp_path / "run/systemd/network") if n.startswith(".")] == []


def test_keep_is_neither_written_nor_removed(tmp_path):
    netdir = tmp_path / "run/systemd/network"
    netdir.mkdir(parents=True)
    (netdir / "10-fangen-frozen.netdev").write_text("old\n")
    (netdir / "10-fangen-frozen.network.d").mkdir()
    (netdir / "10-fangen-gone.netdev").write_text("x\n")
    keep = {"run/systemd/network/10-fangen-frozen.netdev"}
    out = writer.write_tree(str(tmp_path), {"run/systemd/network/10-fangen-frozen.netdev": "new\n",
                                            "run/systemd/network/10-fangen-b.network": "b\n"},
                            keep=keep)
    assert out["removed"] == ["run/systemd/network/10-fangen-gone.netdev"]
    assert (netdir / "10-fangen-frozen.netdev").read_text() == "old\n"
    assert (netdir / "10-fangen-frozen.network.d").is_dir()     # its device is still live


def test_a_failure_half_way_leaves_every_file_as_it_was(tmp_path):
    """Staged first, renamed last: the second file cannot be written (a file where its
    directory belongs), so the first, already staged, never replaces the old one."""
    root = str(tmp_path)
    writer.write_tree(root, {"run/systemd/network/10-fangen-a.network": "old\n",
                             "run/systemd/network/10-fangen-old.netdev": "stale\n"})
    (tmp_path / "run/fangen").write_text("a file in the way\n")
    try:
        writer.write_tree(root, {"run/systemd/network/10-fangen-a.network": "new\n",
                                 "run/fangen/f/dnsmasq.conf": "x\n"})
    except writer.WriteError as exc:
        assert str(exc) == f"{root}/run/fangen: Not a directory; nothing was changed"
    else:
        raise AssertionError("no WriteError")
    netdir = tmp_path / "run/systemd/network"
    assert (netdir / "10-fangen-a.network").read_text() == "old\n"
    assert (netdir / "10-fangen-old.netdev").read_text() == "stale\n"
    assert sorted(os.listdir(netdir)) == ["10-fangen-a.network", "10-fangen-old.netdev"]


def test_a_failed_rename_is_rolled_back(tmp_path, monkeypatch):
    """Should a rename fail after others succeeded, those are undone from the backups."""
    root = str(tmp_path)
    writer.write_tree(root, {"run/systemd/network/10-fangen-a.network": "old a\n",
                             "run/systemd/network/10-fangen-b.network": "old b\n",
                             "run/systemd/network/10-fangen-c.netdev": "stale\n"})
    real = os.replace
    calls = []

    def flaky(src, dst, *args, **kwargs):
        calls.append(dst)
        if dst.endswith("10-fangen-b.network") and ".fangen-" not in os.path.basename(dst):
            raise OSError(5, "Input/output error", dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", flaky)
    try:
        writer.write_tree(root, {"run/systemd/network/10-fangen-a.network": "new a\n",
                                 "run/systemd/network/10-fangen-b.network": "new b\n",
                                 "run/systemd/network/10-fangen-d.network": "new d\n"})
    except writer.WriteError as exc:
        assert str(exc).endswith("10-fangen-b.network: Input/output error; nothing was changed")
    else:
        raise AssertionError("no WriteError")
    monkeypatch.setattr(os, "replace", real)
    netdir = tmp_path / "run/systemd/network"
    assert sorted(os.listdir(netdir)) == ["10-fangen-a.network", "10-fangen-b.network",
                                          "10-fangen-c.netdev"]
    assert (netdir / "10-fangen-a.network").read_text() == "old a\n"
    assert (netdir / "10-fangen-b.network").read_text() == "old b\n"
    assert (netdir / "10-fangen-c.netdev").read_text() == "stale\n"
