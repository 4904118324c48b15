# services.corral.ollamaModels next to services.ollama: the build-time assertions.
#
# Owns the check that corral can read services.ollama's store as it is, and the exact
# settings to use when it cannot. services.ollama writes its store with UMask=0077, readable
# by its own user alone, and keeps its DynamicUser's state in /var/lib/private (mode 0700):
# corral reads the store as ollama's user, mounted read-only by its unit (ReadOnlyPaths=,
# the generator's), instead of loosening either. The option is options.nix's, its hand-over
# generator-input.nix's.
{ config, lib, ... }:
let
  cfg = config.services.corral;
  store = cfg.ollamaModels;
  ollama = config.services.ollama or { };
  ollamaUser = ollama.user or null;
  within = dir: path: path == dir || lib.hasPrefix "${dir}/" path;
  # /var/lib/ollama is services.ollama's StateDirectory: a link into /var/lib/private.
  private = store != null && (within "/var/lib/ollama" store || within "/var/lib/private" store);
  ollamas =
    store != null
    && (ollama.enable or false)
    && (store == (ollama.models or null) || within (ollama.home or "/var/lib/ollama") store);
  recipe = ''services.ollama.user = "ollama"; services.ollama.models = "/var/lib/ollama-models"; systemd.tmpfiles.rules = [ "d /var/lib/ollama-models 0700 ollama ollama -" ]; services.corral.user = "ollama"; services.corral.ollamaModels = config.services.ollama.models; and move the store there once (systemctl stop ollama; mv /var/lib/private/ollama/models/* /var/lib/ollama-models/; chown -R ollama:ollama /var/lib/ollama-models)'';
in
{
  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !private;
        message = "services.corral.ollamaModels: ${store} is inside services.ollama's state directory, which systemd keeps in /var/lib/private (mode 0700) for its DynamicUser, with files only ollama's user can read (UMask=0077): no other service can read it without loosening that. Share ollama's user and give the store a folder of its own: ${recipe}. corral's unit mounts the store read-only.";
      }
      {
        assertion = private || !ollamas || (ollamaUser != null && cfg.user == ollamaUser);
        message = "services.corral.ollamaModels: ${store} is services.ollama's store, whose files only its user can read (UMask=0077); run corral as that user: set services.ollama.user = \"ollama\" (a static account; it is ${builtins.toJSON ollamaUser}) and services.corral.user to the same (it is ${builtins.toJSON cfg.user}). corral's unit mounts the store read-only.";
      }
    ];
  };
}
