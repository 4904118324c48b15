"""Mistakes and secrets before anything is built (issue 24, items 8 and 9).

Owns what evaluation itself refuses (option types, keys in the store, inline keys) and the
settings check that needs corral alone (`services.corral.checked`): its inputs, and that a
build of it reports a mistake without building llama.cpp or a model.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.nix

STORE_FILE = "/nix/store/00000000000000000000000000000000-source/secret"
FETCHED = (
    'models.m.path = pkgs.fetchurl { url = "https://example.invalid/m.gguf";'
    ' hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };'
)


def corral(options: str) -> str:
    return f"{{ pkgs, ... }}: {{ services.corral = {{ enable = true; {options} }}; }}"


# 8. Keys stay out of the store.
def test_an_api_key_file_in_the_store_fails_an_assertion(module: Any) -> None:
    [message] = module.value(corral(f'apiKeyFile = "{STORE_FILE}";'), "failedAssertions")
    assert message.startswith(f"services.corral.apiKeyFile: {STORE_FILE} is in the Nix store")
    assert 'e.g. "/run/secrets/corral-api-keys"' in message
    # A path literal outside the store is the file on the machine, as before.
    assert module.value(corral("apiKeyFile = /etc/corral/keys;"), "failedAssertions") == []


def test_a_peers_key_file_in_the_store_fails_an_assertion(module: Any) -> None:
    options = (
        'peers.laptop = { url = "http://192.168.1.30:11434"; models = [ "x" ];'
        ' apiKeyFile = builtins.toFile "key" "k"; };'
    )
    [message] = module.value(corral(options), "failedAssertions")
    assert message.startswith("services.corral.peers.laptop.apiKeyFile: /nix/store/")
    assert "is in the Nix store" in message


def test_inline_api_keys_warn_and_point_to_the_key_file(module: Any) -> None:
    [warning] = module.value(corral('settings.apiKeys = [ "k" ];'), "warnings")
    assert warning.startswith("services.corral.settings.apiKeys: the keys are written into")
    assert "set services.corral.apiKeyFile" in warning


def test_the_api_key_and_a_peers_key_are_both_credentials(module: Any) -> None:
    # NixOS merges LoadCredential= lists from two definitions; the stand-in does too.
    options = (
        'apiKeyFile = "/run/secrets/k";'
        ' peers.p = { url = "http://192.168.1.30:11434"; apiKeyFile = "/run/secrets/p"; };'
    )
    assert sorted(module.value(corral(options), "installed.loadCredential")) == [
        "api-keys:/run/secrets/k",
        "peer-p:/run/secrets/p",
    ]


# 9. Impossible values stop the evaluation, before anything is built.
@pytest.mark.parametrize(
    ("options", "option", "type_"),
    [
        ('models.m = { path = "m"; ttl = -5; };', "models.m.ttl", "unsigned integer, meaning >=0"),
        ("defaultTTL = -1;", "defaultTTL", "unsigned integer, meaning >=0"),
        ('models.m = { path = "m"; contextSize = 0; };', "models.m.contextSize", "positive"),
        ('models.m = { path = "m"; gpuLayers = -2; };', "models.m.gpuLayers", "at least -1"),
        ("healthTimeout = 0;", "healthTimeout", "positive"),
        ("maxSwapWait = -1;", "maxSwapWait", "nonnegative"),
    ],
)
def test_an_impossible_value_fails_the_evaluation(
    module: Any, options: str, option: str, type_: str
) -> None:
    message = module.error(corral(options))
    assert f"A definition for option `services.corral.{option}' is not of type" in message
    assert type_ in message


def test_the_settings_check_needs_corral_alone(module: Any) -> None:
    inputs = module.value(corral(f'acceleration = "cuda"; {FETCHED}'), "inputs")
    # The check: corral and a settings file that itself depends on nothing.
    assert sorted(inputs["checked"]["own"]) == ["corral", "corral-settings-for-check.json"]
    assert inputs["checked"]["settings"] == []
    # What it spares: the real settings name llama.cpp and the model, and wait for both.
    assert {"llama-cpp-cuda", "m.gguf"} <= set(inputs["generated"]["settings"])
    assert "corral-settings-checked" in inputs["generated"]["own"]


def test_a_mistake_fails_the_check_before_the_model_is_fetched(build: Any) -> None:
    # The stub's fetchurl cannot download: had the model been built first, that would fail.
    configuration = corral(f'{FETCHED} models.m.aliases = [ "n" ]; models.n.path = "/m/n.gguf";')
    done = build(configuration, "config.services.corral.checked")
    assert done.returncode != 0
    assert "aliases: alias 'n' is already the name or an alias of" in done.stderr
    assert "corral-settings-checked.drv' failed" in done.stderr
    assert "m.gguf.drv" not in done.stderr
