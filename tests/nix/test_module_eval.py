"""The NixOS module under nixpkgs' real ``lib.evalModules``, with stand-in NixOS options.

Owns what the module itself decides: option types and their messages, documentation,
what `generatorInput` holds, the acceleration override, and what gets installed (unit
package, reload trigger, /etc, credential, users, firewall, assertions). What the
generator makes of `generatorInput` is test_module_contract.py's.
"""

from __future__ import annotations

from typing import Any

import pytest

from corral.generator.unit_settings import ACCELERATIONS

pytestmark = pytest.mark.nix

ONE_MODEL = '{ services.corral = { enable = true; models."qwen2.5-coder:3b".path = "q.gguf"; }; }'


def corral(options: str) -> str:
    """A configuration module setting ``services.corral`` to ``options`` (Nix text)."""
    return f"{{ pkgs, ... }}: {{ services.corral = {{ enable = true; {options} }}; }}"


def test_a_mistyped_value_names_the_option_path(module: Any) -> None:
    message = module.error(
        corral('models."qwen2.5-coder:3b" = { path = "q.gguf"; contextSize = "big"; };')
    )
    assert 'services.corral.models."qwen2.5-coder:3b".contextSize' in message
    assert "is not of type `null or (positive integer, meaning >0)'" in message
    assert '"big"' in message


def test_an_unknown_acceleration_lists_the_allowed_ones(module: Any) -> None:
    message = module.error(corral('acceleration = "metal";'))
    assert "services.corral.acceleration" in message
    # The enum is the generator's one list (generator/accelerations.json).
    assert ", ".join(f'"{a}"' for a in ACCELERATIONS) in message


def test_an_unknown_model_option_is_an_error(module: Any) -> None:
    message = module.error(corral('models.m = { path = "m.gguf"; contxtSize = 1; };'))
    assert "services.corral.models.m.contxtSize" in message
    assert "does not exist" in message


def test_every_option_is_documented_typed_defaulted_and_exemplified(module: Any) -> None:
    docs = module.value("{}", "docs")
    names = {o["name"] for o in docs}
    assert {"services.corral.enable", "services.corral.models.<name>.path"} <= names
    assert len(docs) >= 35
    for option in docs:
        assert option["description"].strip(), option["name"]
        assert option["type"], option["name"]
        assert option["default"] is not None, f"{option['name']} has no default"
        assert option["example"] is not None, f"{option['name']} has no example"


def test_unset_options_are_left_out_of_the_generator_input(module: Any) -> None:
    given = module.value(ONE_MODEL, "generatorInput")
    assert set(given) == {"host", "port", "llamaServer", "models", "groups", "service"}
    assert "contextSize" not in given["models"]["qwen2.5-coder:3b"]
    assert given["service"]["name"] == "corral"
    # null is resolved, never dropped: the generator would render a CPU unit.
    assert given["service"]["acceleration"] == "cpu"
    assert "extraGroups" not in given["service"]
    assert "user" not in given["service"]
    assert "group" not in given["service"]
    assert "ipAddressAllow" not in given["service"]


def test_a_derivation_or_a_path_becomes_a_string_without_copying(module: Any) -> None:
    given = module.value(
        corral(
            'models.a.path = pkgs.writeText "a.gguf" "";'
            " models.b.path = /srv/models/b.gguf;"
            ' models.c.path = "c.gguf";'
        ),
        "generatorInput",
    )
    paths = {name: m["path"] for name, m in given["models"].items()}
    assert paths["a"].startswith("/nix/store/") and paths["a"].endswith("-a.gguf")
    assert paths["b"] == "/srv/models/b.gguf"
    assert paths["c"] == "c.gguf"


def backends(module: Any, config: str) -> set[str]:
    """The GGML backends that llamaCpp.finalPackage's cmakeFlags switch on."""
    flags = module.value(config, "config.services.corral.llamaCpp.finalPackage.cmakeFlags")
    on = [f for f in flags if f.startswith("-DGGML_") and f.endswith(":BOOL=TRUE")]
    return {f[len("-DGGML_") : -len(":BOOL=TRUE")] for f in on}


@pytest.mark.parametrize(
    ("acceleration", "package", "on"),
    [
        ("null", "llama-cpp", {"BLAS"}),
        ('"cpu"', "llama-cpp", {"BLAS"}),
        ('"cuda"', "llama-cpp-cuda", {"CUDA"}),
        ('"rocm"', "llama-cpp-rocm", {"HIP"}),
        ('"vulkan"', "llama-cpp-vulkan", {"VULKAN"}),
    ],
)
def test_acceleration_overrides_llama_cpp(
    module: Any, acceleration: str, package: str, on: set[str]
) -> None:
    config = corral(f"acceleration = {acceleration};")
    server = module.value(config, "generatorInput.llamaServer")
    assert server.endswith(f"-{package}/bin/llama-server")
    assert backends(module, config) == on


def test_the_unit_is_installed_and_reloads_on_a_config_change(module: Any) -> None:
    installed = module.value(ONE_MODEL, "installed")
    generated = module.value(ONE_MODEL, "generated.outPath")
    assert installed["units"] == ["corral-generated"]
    assert installed["wantedBy"] == ["multi-user.target"]
    assert installed["etc"] == {"corral/config.yaml": f"{generated}/config.yaml"}
    assert installed["reloadTriggers"] == [f"{generated}/config.yaml"]
    assert installed["firewall"] == []
    assert installed["users"] == {}
    assert installed["loadCredential"] == []


def test_nothing_is_installed_unless_enabled(module: Any) -> None:
    config = '{ services.corral.models.m.path = "m.gguf"; }'
    assert module.value(config, "config.systemd.packages") == []
    assert module.value(config, "config.environment.etc") == {}


def test_open_firewall_opens_the_port(module: Any) -> None:
    installed = module.value(corral("openFirewall = true; port = 8080;"), "installed")
    assert installed["firewall"] == [8080]


def test_the_api_key_file_reaches_the_service_as_a_credential(module: Any) -> None:
    config = corral('apiKeyFile = "/run/secrets/corral-keys";')
    assert module.value(config, "installed.loadCredential") == ["api-keys:/run/secrets/corral-keys"]
    assert (
        module.value(config, "generatorInput.apiKeyFile")
        == "/run/credentials/corral.service/api-keys"
    )


def test_a_user_named_corral_is_created(module: Any) -> None:
    installed = module.value(corral('user = "corral";'), "installed")
    assert installed["users"] == {"corral": {"isSystemUser": True, "group": "corral"}}
    assert installed["groups"] == ["corral"]


def test_another_user_must_exist_already(module: Any) -> None:
    config = corral('user = "basnijholt"; group = "users";')
    assert module.value(config, "installed.users") == {}
    service = module.value(config, "generatorInput.service")
    assert (service["user"], service["group"]) == ("basnijholt", "users")


def test_a_model_without_path_fails_an_assertion_named_after_its_option(module: Any) -> None:
    failed = module.value(corral('models."qwq:32b".contextSize = 8192;'), "failedAssertions")
    assert len(failed) == 1
    assert failed[0].startswith('services.corral.models."qwq:32b".path: must be set')


def test_a_cmd_in_settings_stands_in_for_the_path(module: Any) -> None:
    config = corral(
        'models.echo = { }; settings.models.echo.cmd = [ "/bin/upstream" "--port" "{port}" ];'
    )
    assert module.value(config, "failedAssertions") == []
    assert module.value(config, "generatorInput.models.echo.cmd") == [
        "/bin/upstream",
        "--port",
        "{port}",
    ]


def test_a_group_without_a_user_fails_an_assertion(module: Any) -> None:
    failed = module.value(corral('group = "video";'), "failedAssertions")
    assert [m.split(":")[0] for m in failed] == ["services.corral.group"]


def test_settings_are_merged_over_the_options(module: Any) -> None:
    config = corral(
        'models.m = { path = "m.gguf"; contextSize = 1024; };'
        " settings.models.m.concurrency = 2;"
        ' settings.apiKeys = [ "k1" ];'
        ' settings.service.description = "LLMs";'
    )
    given = module.value(config, "generatorInput")
    assert given["models"]["m"] == {
        "path": "m.gguf",
        "contextSize": 1024,
        "concurrency": 2,
        "preload": False,
        "unlisted": False,
    }
    assert given["apiKeys"] == ["k1"]
    assert given["service"]["description"] == "LLMs"
    assert given["service"]["name"] == "corral"


def test_a_preset_hands_over_from_and_not_its_empty_defaults(module: Any) -> None:
    config = corral(
        'models.base = { path = "m.gguf"; extraArgs = [ "--flash-attn" "on" ]; };'
        ' models.pirate = { from = "base"; systemPrompt = "Arr."; };'
    )
    given = module.value(config, "generatorInput")["models"]["pirate"]
    # An empty extraArgs would override the base's and cost the shared llama-server.
    assert given == {"from": "base", "systemPrompt": "Arr.", "preload": False, "unlisted": False}


# Defect 3: the default acceleration follows nixpkgs' config, for the unit and the build.
@pytest.mark.parametrize(
    ("pkgs_config", "acceleration", "package"),
    [
        ("{ }", "cpu", "llama-cpp"),
        ("{ cudaSupport = true; allowUnfree = true; }", "cuda", "llama-cpp-cuda"),
        ("{ rocmSupport = true; }", "rocm", "llama-cpp-rocm"),
    ],
)
def test_null_acceleration_follows_nixpkgs_config(
    module: Any, pkgs_config: str, acceleration: str, package: str
) -> None:
    configured = type(module)(module.lib, pkgs_config=pkgs_config)
    given = configured.value(ONE_MODEL, "generatorInput")
    assert given["service"]["acceleration"] == acceleration
    assert given["llamaServer"].endswith(f"-{package}/bin/llama-server")


def test_an_explicit_acceleration_wins_over_nixpkgs_config(module: Any) -> None:
    configured = type(module)(module.lib, pkgs_config="{ cudaSupport = true; allowUnfree = true; }")
    given = configured.value(corral('acceleration = "cpu";'), "generatorInput")
    assert given["service"]["acceleration"] == "cpu"
    assert given["llamaServer"].endswith("-llama-cpp/bin/llama-server")


def test_the_stand_in_llama_cpp_takes_only_nixpkgs_arguments(module: Any) -> None:
    message = module.error(
        "{ pkgs, ... }: { services.corral = { enable = true;"
        " llamaCpp.package = pkgs.llama-cpp.override { useCuda = true; }; }; }"
    )
    assert "unexpected argument 'useCuda'" in message


# Defect 4: a preset takes its base's file.
def test_a_preset_needs_no_path(module: Any) -> None:
    config = corral(
        'models.base.path = "m.gguf"; models.pirate = { from = "base"; systemPrompt = "Arr."; };'
    )
    assert module.value(config, "failedAssertions") == []


# Defect 5: no Group= for a user the module does not own.
def test_a_normal_user_runs_in_its_own_primary_group(module: Any) -> None:
    config = corral('user = "alice";')
    service = module.value(config, "generatorInput.service")
    assert service["user"] == "alice"
    assert "group" not in service
    installed = module.value(config, "installed")
    assert (installed["users"], installed["groups"]) == ({}, [])


def test_a_chosen_group_is_kept_and_not_created(module: Any) -> None:
    config = corral('user = "alice"; group = "media";')
    assert module.value(config, "generatorInput.service.group") == "media"
    assert module.value(config, "installed.groups") == []


def test_the_user_corral_gets_its_group_corral(module: Any) -> None:
    config = corral('user = "corral";')
    assert module.value(config, "generatorInput.service.group") == "corral"
    assert module.value(config, "installed.groups") == ["corral"]


# Also: IPv6 beyond the local networks.
def test_ip_address_allow_reaches_the_unit_settings(module: Any) -> None:
    config = corral('host = "::"; ipAddressAllow = [ "192.168.1.0/24" "2001:db8:1234::/64" ];')
    service = module.value(config, "generatorInput.service")
    assert service["ipAddressAllow"] == ["192.168.1.0/24", "2001:db8:1234::/64"]


# Also: warnings.
API_KEY = 'apiKeyFile = "/run/secrets/k";'


def warnings(module: Any, options: str, pkgs_config: str = "{ }") -> list[str]:
    configured = type(module)(module.lib, pkgs_config=pkgs_config)
    found: list[str] = configured.value(corral(options), "warnings")
    return found


def test_the_defaults_warn_of_nothing(module: Any) -> None:
    assert warnings(module, "") == []
    assert warnings(module, f'host = "0.0.0.0"; {API_KEY}') == []


def test_an_open_host_without_keys_warns(module: Any) -> None:
    found = warnings(module, 'host = "0.0.0.0";')
    assert len(found) == 1
    assert found[0].startswith('services.corral.host: is "0.0.0.0", beyond loopback, and no API')
    # Inline keys answer that warning, with their own (issue 24, 8).
    [inline] = warnings(module, 'host = "0.0.0.0"; settings.apiKeys = [ "k" ];')
    assert inline.startswith("services.corral.settings.apiKeys: the keys are written into")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_open_firewall_on_loopback_warns(module: Any, host: str) -> None:
    found = warnings(module, f'openFirewall = true; host = "{host}";')
    assert [w.split(":")[0] for w in found] == ["services.corral.openFirewall"]
    assert warnings(module, f'openFirewall = true; host = "0.0.0.0"; {API_KEY}') == []


def test_cuda_without_an_nvidia_driver_warns(module: Any) -> None:
    found = warnings(module, 'acceleration = "cuda";')
    assert [w.split(":")[0] for w in found] == ["services.corral.acceleration"]
    assert 'services.xserver.videoDrivers = [ "nvidia" ]' in found[0]
    driver = '{ services.xserver.videoDrivers = [ "nvidia" ]; services.corral.enable = true; }'
    cuda = "{ cudaSupport = true; allowUnfree = true; }"
    configured = type(module)(module.lib, pkgs_config=cuda)
    assert configured.value(driver, "warnings") == []
    # null acceleration that resolves to CUDA warns the same.
    assert len(warnings(module, "", pkgs_config=cuda)) == 1
