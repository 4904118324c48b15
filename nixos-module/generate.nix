# The build step: `corral generate` on `services.corral.generatorInput`, which is
# `services.corral.generated`, and the same check on a copy without string context, which
# is `services.corral.checked`.
#
# Owns the two derivations and the layout of the output: config.yaml at the top, unit
# files under lib/systemd/system where `systemd.packages` looks for them. Validation and
# rendering are the generator's; a bad setting fails the check with its message, so
# `nixos-rebuild` stops before anything on the machine changes, and before llama.cpp or a
# model is built: the check depends on corral alone.
{
  pkgs,
  lib,
  cfg,
}:
let
  inherit (import ./layout.nix) configPath;
  json = builtins.toJSON cfg.generatorInput;
  # The name ends in .json: the generator picks its parser by the file's suffix.
  settingsFile = pkgs.writeText "corral-settings.json" json;
  # The same text without its string context: building it needs none of the store paths
  # it names (llama.cpp, fetchurl's models), which exist only once built.
  uncheckedFile = pkgs.writeText "corral-settings-for-check.json" (builtins.unsafeDiscardStringContext json);

  # Errors name the option the user wrote, not a key of this JSON file: the service's keys
  # are top-level options here, everything else sits under services.corral as it does in
  # the settings, and a key given through services.corral.settings is named there. The
  # generator writes a model's name as JSON (models."a"), any other key as it is.
  settingsPaths =
    prefix: value:
    lib.concatLists (
      lib.mapAttrsToList (
        key: inner:
        let
          path = prefix ++ [ key ];
        in
        [ path ] ++ lib.optionals (lib.isAttrs inner && !lib.isDerivation inner) (settingsPaths path inner)
      ) value
    );
  located =
    path:
    lib.concatStringsSep "." (
      lib.imap0 (
        i: key:
        if i == 1 && builtins.head path == "models" then builtins.toJSON key else key
      ) path
    );
  fromSettings = lib.concatMap (
    path:
    let
      at = located path;
      named = "services.corral.settings.${at}";
    in
    [
      (lib.nameValuePair "${at}:" "${named}:")
      (lib.nameValuePair "${at}." "${named}.")
      (lib.nameValuePair "${at}[" "${named}[")
    ]
  ) (settingsPaths [ ] cfg.settings);
  locations = builtins.toJSON (
    {
      "" = "services.corral.";
      "service." = "services.corral.";
    }
    // lib.listToAttrs fromSettings
  );

  generate = settings: ''
    corral generate --settings "${settings}" --out "$out" --config-path ${configPath} \
      --locations ${lib.escapeShellArg locations}
  '';

  checked = pkgs.runCommand "corral-settings-checked" {
    nativeBuildInputs = [ cfg.package ];
    settingsFile = uncheckedFile;
  } (generate "$settingsFile");
in
{
  inherit checked;
  generated =
    pkgs.runCommand "corral-generated"
      {
        nativeBuildInputs = [ cfg.package ];
        inherit settingsFile;
        # Built first: a mistake fails here, before llama.cpp and the models are built.
        inherit checked;
      }
      ''
        ${generate "$settingsFile"}
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
      '';
}
