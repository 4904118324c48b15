# The stand-in for the flake input nix-systems/default in flake-outputs.nix: one system.
[ "x86_64-linux" ]
