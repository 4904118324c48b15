# The NixOS VM test (the flake's `checks.<system>.vm`): a machine with the module and the
# demo model boots, answers a chat completion through corral, scores as the generator's
# tests promise under `systemd-analyze security` while running, keeps its main process
# across a reload (SIGHUP), unloads the model when its TTL runs out, and moves to a new
# port when a configuration with that port is switched to (a restart, not a reload), and,
# socket-activated, starts on the first request, exits when idle and starts again.
#
# Owns the end-to-end check of the module on a real NixOS. It needs nixpkgs and KVM, so it
# runs with `nix flake check`, not in tests/nix.
{
  pkgs,
  module,
  demoModel,
}:
pkgs.testers.runNixOSTest {
  name = "corral";

  nodes.machine =
    { lib, ... }:
    {
      imports = [ module ];
      virtualisation.memorySize = 2048;
      virtualisation.cores = 2;
      environment.systemPackages = [
        pkgs.curl
        pkgs.procps
      ];
      services.corral = {
        enable = true;
        defaultTTL = 5;
        models."gemma-3-270m" = {
          path = demoModel;
          # The GGUF carries no chat template; without this the answers are garbage.
          chatTemplate = "gemma";
          contextSize = 2048;
        };
      };
      # The same machine on another port: switching to it must restart corral there.
      specialisation.port8080.configuration.services.corral.port = lib.mkForce 8080;
      # The same machine socket-activated: systemd listens, corral runs only while needed.
      specialisation.activated.configuration.services.corral = {
        socketActivation = true;
        idleExit = 5;
      };
    };

  testScript = ''
    import json
    import re

    # pgrep -f matches command lines; the brackets keep it from matching the shell that runs it.
    llama_server = "pgrep -f '[l]lama-server'"

    machine.wait_for_unit("corral.service")
    machine.wait_for_open_port(11434)

    with subtest("a chat completion is answered by the demo model"):
        request = json.dumps({
            "model": "gemma-3-270m",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
        })
        reply = json.loads(machine.succeed(
            "curl --fail --silent --show-error --max-time 300 "
            "-H 'Content-Type: application/json' "
            f"-d '{request}' http://127.0.0.1:11434/v1/chat/completions"
        ))
        assert reply["choices"][0]["message"]["content"].strip(), reply
        machine.succeed(llama_server)

    with subtest("systemd-analyze security scores the running unit at most 1.2"):
        report = machine.succeed("systemd-analyze security --no-pager corral.service")
        found = re.search(r"Overall exposure level for corral.service: (\d+\.\d)", report)
        assert found is not None, report
        assert float(found.group(1)) <= 1.2, report

    with subtest("a reload keeps the service's main process"):
        before = machine.succeed("systemctl show --property MainPID --value corral.service")
        machine.succeed("systemctl reload corral.service")
        machine.wait_for_unit("corral.service")
        after = machine.succeed("systemctl show --property MainPID --value corral.service")
        assert before == after, f"MainPID changed on reload: {before!r} -> {after!r}"

    with subtest("no llama-server is left once the TTL has passed"):
        machine.wait_until_fails(llama_server, timeout=120)
        machine.succeed("systemctl is-active corral.service")

    with subtest("a new port restarts the service on that port"):
        machine.succeed(
            "/run/current-system/specialisation/port8080/bin/switch-to-configuration test"
        )
        machine.wait_for_open_port(8080)
        machine.wait_for_closed_port(11434)
        machine.succeed("curl --fail --silent http://127.0.0.1:8080/health")

    with subtest("socket activation: started by the first request, gone when idle, started again"):
        machine.succeed(
            "/run/current-system/specialisation/activated/bin/switch-to-configuration test"
        )
        machine.wait_for_unit("corral.socket")
        # Nothing loaded, nobody connected: corral exits after idleExit, the socket stays.
        machine.wait_until_fails("systemctl is-active corral.service", timeout=120)
        machine.succeed("systemctl is-active corral.socket")
        machine.fail(llama_server)
        reply = json.loads(machine.succeed(
            "curl --fail --silent --show-error --max-time 300 "
            "-H 'Content-Type: application/json' "
            f"-d '{request}' http://127.0.0.1:11434/v1/chat/completions"
        ))
        assert reply["choices"][0]["message"]["content"].strip(), reply
        # The model's TTL (5 s), then idleExit (5 s): the service is gone, exit code 0.
        machine.wait_until_fails("systemctl is-active corral.service", timeout=120)
        machine.fail(llama_server)
        code = machine.succeed("systemctl show --property ExecMainStatus --value corral.service")
        assert code.strip() == "0", code
        machine.succeed("curl --fail --silent --max-time 60 http://127.0.0.1:11434/health")
        for unit in ("corral.service", "corral.socket"):
            machine.succeed(f"systemd-analyze verify /etc/systemd/system/{unit}")
        report = machine.succeed("systemd-analyze security --no-pager corral.service")
        found = re.search(r"Overall exposure level for corral.service: (\d+\.\d)", report)
        assert found is not None and float(found.group(1)) <= 1.2, report
  '';
}
