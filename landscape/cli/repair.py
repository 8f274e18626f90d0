"""``landscape repair``."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("repair", help="copy what can still be read of a damaged trajectory into a new file",
                       description="Keeps every epoch whose rows read back intact (checksums), the intact "
                       "checkpoints up to there and the resume state when it is intact, in a new file "
                       "(never in place), and says what was dropped. 'landscape show --verify FILE' finds "
                       "the damage without writing anything.")
    p.add_argument("trajectory", help="the damaged traj.h5")
    p.add_argument("-o", "--out", required=True, help="the repaired copy (a new .h5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(run=run)


def run(args):
    from ..integrity import repair
    r = repair(args.trajectory, args.out, args.overwrite)
    print(f"{args.out}: {r['epochs_complete']} of {r['was']} committed epochs kept"
          f"{'' if r['resumable'] else '; it cannot be resumed'}")
    for line in r["dropped"]:
        print(f"  dropped {line}")
