"""``python -m recu_core.export CKPT -o OUT [--expected-sha256 HEX]``: write the ``.bnn``
export of a training checkpoint (the API runs this in a child process, so that torch
never loads in the API's own process)."""

import argparse
import os
import sys
from pathlib import Path

from recu_core.export.bnn_file import export_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--expected-sha256", default=None)
    args = parser.parse_args()
    try:
        data = export_checkpoint(args.checkpoint, expected_sha256=args.expected_sha256)
    except (ValueError, FileNotFoundError) as err:
        print(f"cannot export {args.checkpoint}: {err}", file=sys.stderr)
        return 2
    partial = args.output.with_name(f".{args.output.name}.part")
    partial.write_bytes(data)
    os.replace(partial, args.output)  # never a half-written export
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
