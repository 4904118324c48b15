# The build step: `corral generate` on `services.corral.generatorInput`, which is
# `services.corral.generated`.
#
# Owns the derivation and the layout of its output: config.yaml at the top, unit files
# under lib/systemd/system where `systemd.packages` looks for them. Validation and
# rendering are the generator's; a bad setting fails this build with its message, so
# `nixos-rebuild` stops before anything on the machine changes.
{
  pkgs,
  lib,
  cfg,
}:
let
  inherit (import ./layout.nix) configPath;
  # The name ends in .json: the generator picks its parser by the file's suffix.
  settingsFile = pkgs.writeText "corral-settings.json" (builtins.toJSON cfg.generatorInput);
  # Errors name the option the user wrote, not a key of this JSON file: the service's keys
  # are top-level options here, everything else sits under services.corral as it does in
  # the settings.
  locations = builtins.toJSON {
    "" = "services.corral.";
    "service." = "services.corral.";
  };
in
pkgs.runCommand "corral-generated"
  {
    nativeBuildInputs = [ cfg.package ];
    inherit settingsFile;
  }
  ''
    corral generate --settings "$settingsFile" --out "$out" --config-path ${configPath} \
      --locations ${lib.escapeShellArg locations}
    mkdir -p "$out/lib/systemd/system"
    for unit in "$out"/*.service "$out"/*.socket "$out"/*.timer "$out"/*.path; do
      if [ -e "$unit" ]; then
        mv "$unit" "$out/lib/systemd/system/"
      fi
    done
    if ! [ -e "$out/lib/systemd/system/${cfg.generatorInput.service.name}.service" ]; then
      echo "corral generate wrote no ${cfg.generatorInput.service.name}.service" >&2
      exit 1
    fi
  ''
