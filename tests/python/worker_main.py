"""A worker process for the tests: `python worker_main.py CATALOG ROOT LEASE_SECONDS` runs the
engines of engines.py until stopped (SIGINT/SIGTERM) or killed, then prints the attempts it
finished."""

import sys

import btstore
import engines

if __name__ == "__main__":
    catalog, root, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = btstore.Store(catalog, root)
    worker = btstore.Worker(store, {"paced": engines.paced, "forever": engines.forever},
                            lease_seconds=lease, poll_interval=0.05)
    print("finished", worker.run(), flush=True)
