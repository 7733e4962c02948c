#!/usr/bin/env bash
# Pack what a GPU machine with no internet needs to train from this checkout.
#
#   tools/offline_bundle.sh BUNDLE_DIR [FOLDER ...]
#
# BUNDLE_DIR/data/FOLDER/raw/*.gz: each dataset folder (default: MNIST) gzipped from the data root
# ($LRBOOK_DATA, else ./data) in torchvision's layout. BUNDLE_DIR/site/: the pure-Python packages
# named in $LRBOOK_BUNDLE_PACKAGES (default: captum), copied from this Python's environment without
# bytecode, for a machine that has PyTorch, torchvision, NumPy, pandas, SciPy, matplotlib and tqdm but
# not these. Send the bundle with the checkout and start the batch there with tools/offline_run.sh.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 BUNDLE_DIR [FOLDER ...]   (FOLDER: a dataset folder of the data root, default MNIST)" >&2
    exit 2
fi
bundle=$1
shift
[ $# -gt 0 ] || set -- MNIST
root=${LRBOOK_DATA:-data}
python=${PYTHON:-python}
rm -rf "$bundle/data" "$bundle/site"
mkdir -p "$bundle/site"
for folder in "$@"; do
    raw=$root/$folder/raw
    files=$(cd "$raw" 2>/dev/null && find . -maxdepth 1 -type f ! -name '*.gz' | sort) || true
    if [ -z "$files" ]; then
        echo "no unpacked files in $raw/: set LRBOOK_DATA to the folder that holds $folder/raw/ (torchvision's layout)" >&2
        exit 1
    fi
    mkdir -p "$bundle/data/$folder/raw"
    for f in $files; do gzip -c "$raw/$f" > "$bundle/data/$folder/raw/${f#./}.gz"; done
done
for package in ${LRBOOK_BUNDLE_PACKAGES:-captum}; do
    where=$("$python" -c "import importlib.util as u, os, sys; s = u.find_spec(sys.argv[1]); print(os.path.dirname(s.origin) if s and s.origin else '')" "$package")
    if [ -z "$where" ]; then
        echo "$python cannot import $package: install it (pip install -e .) or choose another PYTHON" >&2
        exit 1
    fi
    cp -R "$where" "$bundle/site/$package"
done
find "$bundle/site" -name __pycache__ -type d -prune -exec rm -rf {} +
echo "[offline_bundle] $(du -sh "$bundle" | cut -f1) in $bundle: data $*, packages ${LRBOOK_BUNDLE_PACKAGES:-captum}" >&2
