# Keys stay out of the Nix store: the check shared by `services.corral.apiKeyFile` and
# `services.corral.peers.<name>.apiKeyFile`.
#
# Owns the assertion and its message. The store is readable by every user of the machine,
# and a path literal in a flake (`./secret`) is copied there before the module sees it.
{ lib }:
let
  # nixpkgs' own test where the lib has it: types.externalPath (absolute, not in the store).
  external =
    if lib.types ? externalPath then
      lib.types.externalPath.check
    else
      p: !(lib.hasPrefix "${builtins.storeDir}/" p);
in
{
  outsideStore = option: path: {
    assertion = path == null || external path;
    message = ''${option}: ${toString path} is in the Nix store, which every user of this machine can read (a path literal such as ./secret in a flake is copied there); give the file's path on the machine as a string instead, e.g. "/run/secrets/corral-api-keys" (where sops-nix or agenix put secrets)'';
  };
}
