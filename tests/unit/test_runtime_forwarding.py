"""Who else needs net.ipv4.ip_forward: the parser of `nft list chains` (pure)."""

from fangen.runtime import forwarding

# `nft list chains` (nftables 1.0.6) in a namespace holding Docker-like tables (iptables-nft),
# another firewall, fangen's own table and tables of families that do not route IPv4
CHAINS = """table ip nat {
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
	}
	chain DOCKER {
	}
}
table inet fw {
	chain forwarding {
		type filter hook forward priority filter; policy drop;
	}
	chain inp {
		type filter hook input priority filter; policy accept;
	}
}
table ip fangen-x {
	chain forward {
		type filter hook forward priority filter; policy accept;
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
	}
}
table ip6 v6 {
	chain f {
		type filter hook forward priority filter; policy accept;
	}
}
table bridge br {
	chain f {
		type filter hook forward priority 0; policy accept;
	}
}
table ip filter {
	chain DOCKER-USER {
	}
}
table inet quiet {
	chain inp {
		type filter hook input priority filter; policy accept;
	}
}
"""


def test_users_from_chains():
    assert forwarding.users_from_chains(CHAINS) == [
        "nft table inet fw, chain forwarding (filter hook forward)",
        "nft table ip filter, chain DOCKER-USER",
        "nft table ip nat, chain POSTROUTING (nat hook postrouting)",
    ]


def test_only_fangen_and_input_chains_need_nothing():
    only_ours = CHAINS[CHAINS.index("table ip fangen-x"):CHAINS.index("table ip6 v6")] + \
        CHAINS[CHAINS.index("table inet quiet"):]
    assert forwarding.users_from_chains(only_ours) == []
    assert forwarding.users_from_chains("") == []


def test_legacy_tables(tmp_path):
    assert forwarding.legacy_tables(str(tmp_path)) == []
    (tmp_path / "net").mkdir()
    (tmp_path / "net/ip_tables_names").write_text("")
    assert forwarding.legacy_tables(str(tmp_path)) == []
    (tmp_path / "net/ip_tables_names").write_text("nat\nfilter\n")
    assert forwarding.legacy_tables(str(tmp_path)) == ["filter", "nat"]
