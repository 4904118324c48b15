"""remote: a model's ``rpc`` addresses, ``peers``, and one namespace for local and peer names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.generator import loader
from corral.generator.problems import ConfigError
from corral.generator.remote import PeerModel, split_host_port

LOCAL = {"name": "small", "path": "/m/small.gguf", "aliases": ["s"]}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loader.validate(raw, "test")
    return exc.value.problems


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.168.1.20:50052", ("192.168.1.20", 50052)),
        ("[fd00::2]:50052", ("fd00::2", 50052)),
        ("worker.lan:1", ("worker.lan", 1)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_rpc_addresses_are_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected
    config = loader.validate({"models": [{**LOCAL, "rpc": [address]}]})
    assert config.models[0].rpc == [address]


@pytest.mark.parametrize(
    "address", ["192.168.1.20", "fd00::2:50052", "host:0", "host:70000", "a b:1", ":50052", "h:x"]
)
def test_a_bad_rpc_address_names_the_place_the_value_and_the_form(address: str) -> None:
    [problem] = problems({"models": [{**LOCAL, "rpc": ["10.0.0.2:50052", address]}]})
    assert problem.startswith("models[0].rpc[1]: must be host:port"), problem
    assert repr(address) in problem


def test_peers_take_names_or_names_with_aliases() -> None:
    config = loader.validate(
        {
            "models": [LOCAL],
            "peers": {
                "box": {
                    "url": "http://10.0.0.2:11434/",
                    "apiKeyFile": "/run/keys/box",
                    "models": ["big:32b", {"name": "coder", "aliases": ["c"]}],
                }
            },
        }
    )
    peer = config.peers["box"]
    assert peer.url == "http://10.0.0.2:11434"  # no trailing slash: paths are appended
    assert peer.api_key_file == Path("/run/keys/box")
    assert peer.entries == [PeerModel(name="big:32b"), PeerModel(name="coder", aliases=["c"])]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://10.0.0.2", "must be an http:// or https:// URL"),
        ("10.0.0.2:11434", "must be an http:// or https:// URL"),
        ("http://", "must be an http:// or https:// URL"),
        ("http://user:secret@10.0.0.2", "must hold no query, fragment or credentials"),
    ],
)
def test_a_peer_url_must_be_http_or_https(url: str, expected: str) -> None:
    [problem] = problems({"peers": {"box": {"url": url, "models": ["x"]}}})
    assert problem.startswith(f"peers.box.url: {expected}"), problem


@pytest.mark.parametrize(
    ("peers", "location", "clash"),
    [
        ({"box": {"url": "http://b", "models": ["small"]}}, "peers.box.models[0]", "'small'"),
        ({"box": {"url": "http://b", "models": ["x", "s"]}}, "peers.box.models[1]", "'s'"),
        (
            {"box": {"url": "http://b", "models": [{"name": "x", "aliases": ["small"]}]}},
            "peers.box.models[0]",
            "'small'",
        ),
        (
            {"a": {"url": "http://a", "models": ["x"]}, "b": {"url": "http://b", "models": ["x"]}},
            "peers.b.models[0]",
            "peer 'a'",
        ),
    ],
)
def test_a_name_routes_to_one_place_only(peers: dict[str, Any], location: str, clash: str) -> None:
    [problem] = problems({"models": [LOCAL], "peers": peers})
    assert problem.startswith(f"{location}: "), problem
    assert clash in problem and "routes to one place only" in problem


def test_a_bad_peer_name_and_an_unknown_key_are_located() -> None:
    found = problems(
        {"peers": {"no way": {"url": "http://b"}, "ok": {"url": "http://b", "key": 1}}}
    )
    assert any(p.startswith("peers.no way") for p in found), found
    assert any(p.startswith("peers.ok.key: unknown key") for p in found), found


def test_nix_nulls_in_a_peer_mean_unset() -> None:
    config = loader.validate({"peers": {"box": {"url": "http://b", "apiKeyFile": None}}})
    assert config.peers["box"].api_key_file is None


def test_discovery_leaves_a_peers_name_to_the_peer(tmp_path: Path) -> None:
    (tmp_path / "big.gguf").write_bytes(b"GGUF")
    config = loader.discover(
        loader.validate(
            {"models_path": str(tmp_path), "peers": {"box": {"url": "http://b", "models": ["big"]}}}
        )
    )
    assert [m.name for m in config.models] == []
