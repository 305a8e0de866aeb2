#!/usr/bin/env bash
# Installs the solc-js wrapper as the "native" solc that py-solc-x looks for,
# links anvil and ganache into the virtual environment, and makes every Python
# of .venv see SOLCX_BINARY_PATH (a .pth file), so `ape compile` works with or
# without `source .venv/bin/activate` and never tries a download.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
version="$(node -e "console.log(require('$root/node_modules/solc/package.json').version)")"
bindir="$venv/solcx"
mkdir -p "$bindir"
cat > "$bindir/solc-v$version" <<SH
#!/bin/sh
exec node "$root/tools/solc-wrapper.js" "\$@"
SH
chmod +x "$bindir/solc-v$version"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "import os; os.environ.setdefault('SOLCX_BINARY_PATH', '$bindir')" > "$site/chainfl_solcx.pth"
ln -sf "$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" "$venv/bin/anvil"
ln -sf "$root/node_modules/.bin/ganache" "$venv/bin/ganache"
grep -q SOLCX_BINARY_PATH "$venv/bin/activate" || echo "export SOLCX_BINARY_PATH='$bindir'" >> "$venv/bin/activate"
"$bindir/solc-v$version" --version | tail -1
