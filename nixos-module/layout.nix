# Where the module puts things on the machine; shared by generator-input.nix, generate.nix
# and default.nix so that the unit, /etc and the credential agree.
rec {
  unitName = "corral";
  # The user and group the module creates when services.corral.user names it.
  account = "corral";
  # A stable path, not the store path: a reload (SIGHUP) makes the running corral read the
  # new file, whereas a store path in ExecStart would keep pointing at the old one.
  etcName = "corral/config.yaml";
  configPath = "/etc/${etcName}";
}
