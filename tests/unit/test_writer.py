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
