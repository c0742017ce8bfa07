#!/usr/bin/env bash
# Round 40: the default's captions that round 39 did not reach in time (octahedron, teardrop, bird, chair),
# seeds 0 and 1 in one sweep.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
R=$OUT/r40; mkdir -p "$R"
C=""; for s in octahedron teardrop bird chair; do for c in red orange yellow green cyan blue purple pink white gray; do
  C="$C;a $c $s"; done; done
timeout 420 python3 benchmarks/shapes_sweep.py --captions="${C#;}" --seeds=2 --out=/tmp/rest \
    --config.progress_bar=false > "$R/rest.log" 2>&1
echo "exit $? at $(date +%T)"
cp /tmp/rest/summary.json /tmp/rest/summary.md "$R/" 2>/dev/null
cd "$OUT" && tar -czf r40.tgz r40 && rm -rf r40; ls -la "$OUT"
