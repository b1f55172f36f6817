"""A longer fuzz run of numlp's loaders (IDX, model files, checkpoints) with hypothesis.

Same properties as tests/test_fuzz.py, many more inputs. Prints how many inputs each property
tried and any failure found (a loader raising something other than its own clear error).
``--commands N`` then runs the structured fuzzer of tests/test_fuzz_commands.py (mutated
headers, committee files, configs, sweep files, metrics.jsonl and HTTP bodies through the real
commands) with N examples per property.

    python benchmarks/fuzz.py --examples 20000 --commands 3000
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fuzz  # noqa: E402  (the properties live with the tests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--commands", type=int, default=0, help="examples per command property")
    args = parser.parse_args()
    config = settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    counts = {}

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)

        class Factory:
            def mktemp(self, name):
                folder = tmp_path / name
                folder.mkdir(exist_ok=True)
                return folder

        originals = test_fuzz.valid_files(Factory())

        def counted(key, fn):
            def wrapper(*a, **k):
                counts[key] = counts.get(key, 0) + 1
                return fn(*a, **k)

            return wrapper

        load = counted("random bytes", test_fuzz.load_or_refuse)

        @config
        @given(name=st.sampled_from(sorted(test_fuzz.LOADERS)), payload=st.binary(max_size=4096))
        def random_bytes(name, payload):
            load(name, payload, tmp_path)

        mutate = counted("mutated valid files", test_fuzz.load_or_refuse)

        @config
        @given(name=st.sampled_from(sorted(test_fuzz.LOADERS)), data=st.data())
        def mutated(name, data):
            mutate(name, test_fuzz.mutate(originals[name], data), tmp_path)

        headers = counted("IDX size claims", lambda: None)
        claims = (
            test_fuzz.test_idx_headers_claiming_any_size_never_allocate_it.hypothesis.inner_test
        )

        @config
        @given(
            dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
            code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
            body=st.binary(max_size=256),
        )
        def idx_claims(dims, code, body):
            headers()
            claims(tmp_path, dims, code, body)

        failures = []
        for prop in (random_bytes, mutated, idx_claims):
            start = time.perf_counter()
            try:
                prop()
                verdict = "no failure"
            except Exception as err:  # report, do not hide
                verdict = f"FAILURE: {type(err).__name__}: {err}"
                failures.append(verdict)
            print(f"{prop.__name__}: {verdict} ({time.perf_counter() - start:.0f}s)", flush=True)
    print("inputs tried:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if args.commands:
        import os
        import subprocess

        tests = Path(__file__).resolve().parents[1] / "tests" / "test_fuzz_commands.py"
        env = {**os.environ, "NUMLP_FUZZ_EXAMPLES": str(args.commands), "MPLBACKEND": "Agg"}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", str(tests)], env=env)
        if done.returncode:
            failures.append("command properties")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
