# corral.lock.json in Nix: each model `source` turned into `pkgs.fetchurl` calls.
#
# Owns reading the lock that `corral lock` writes (builtins.fromJSON), the fetchurl of each
# file with the hash the registry published, the folder that keeps a split GGUF's parts
# together under their own names (llama.cpp finds parts 2..n by name beside the first), the
# projector as `--mmproj`, the library's defaults under the model's own, and the evaluation
# error for a source the lock does not hold. It resolves nothing itself: no network at
# evaluation time, only the lock.
{
  lib,
  pkgs,
  lockFile,
  # The machine's name, for the command in the messages (nixosConfigurations.<host>).
  host ? "HOST",
}:
let
  # supervisor/pull/lock.py's VERSION: the lock's shape that this file reads.
  version = 1;
  # The whole recipe from the Nix config alone: services.corral.lockInput evaluates without
  # the lock (a NixOS user has no config.yaml).
  command = "nix eval --json .#nixosConfigurations.${host}.config.services.corral.lockInput > lock-input.json && corral lock --config lock-input.json";
  read = builtins.fromJSON (builtins.readFile lockFile);
  lock =
    if lockFile == null then
      { sources = { }; }
    else if (read.version or null) != version then
      throw "services.corral.lockFile: ${toString lockFile} has version ${builtins.toJSON (read.version or null)}, and this corral reads version ${toString version}; write it again with `${command}`"
    else
      read;

  fetch =
    file:
    pkgs.fetchurl {
      inherit (file) url hash name;
    };

  missing =
    name: source:
    throw "services.corral.models.${lib.strings.escapeNixIdentifier name}.source: ${builtins.toJSON source} is not in the lock file ${
      if lockFile == null then "(services.corral.lockFile is null)" else toString lockFile
    }; write the lock with `${command}` (it needs the network once) and set services.corral.lockFile = ./corral.lock.json (the file it writes)";

  entry = name: source: lock.sources.${source} or (missing name source);

  modelPath =
    files:
    let
      first = builtins.head files;
      together = pkgs.runCommand "corral-${lib.removeSuffix ".gguf" first.name}-parts" { } (
        "mkdir -p $out\n"
        + lib.concatMapStrings (f: "ln -s ${fetch f} $out/${f.name}\n") files
      );
    in
    if builtins.length files == 1 then fetch first else "${together}/${first.name}";
in
{
  # What a model with `source` (and no `path`) hands the generator, given its own options.
  model =
    name: m:
    let
      found = entry name m.source;
      byRole = role: builtins.filter (f: f.role == role) found.files;
      projector = byRole "mmproj";
    in
    {
      path = modelPath (byRole "model");
      extraArgs =
        m.extraArgs ++ lib.optionals (projector != [ ]) [
          "--mmproj"
          "${fetch (builtins.head projector)}"
        ];
      parameters = (found.parameters or { }) // m.parameters;
      systemPrompt = if m.systemPrompt != null then m.systemPrompt else found.system_prompt or null;
    };
}
