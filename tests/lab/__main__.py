"""``python -m tests.lab``: build the lab binaries if needed, start a control plane
and keep it running until Ctrl-C, so a developer can point kubectl, the Django app
or the node agent at it (``export KUBECONFIG=...``).

Workdir: ``$SPIDERWEB_LAB_DIR`` or /tmp/spiderweb-lab (kept after exit, so the
component logs can be read).
"""

import os
import signal
import sys
import threading

from .controlplane import ControlPlane, ensure_built, recorded_build_times


def main() -> int:
    bin_dir = ensure_built()
    workdir = os.environ.get("SPIDERWEB_LAB_DIR", "/tmp/spiderweb-lab")
    times = recorded_build_times(bin_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ControlPlane(workdir, bin_dir) as cp:
        print(f"binaries:      {bin_dir}")
        print(f"cold build:    {times.get('cold', 'not recorded on this machine')}")
        print(f"warm build:    {times.get('warm', 'not recorded (run build.sh --rebuild)')}")
        print(f"start-up:      {cp.startup_seconds:.1f}s (apiserver ready after {cp.apiserver_ready_seconds:.1f}s)")
        print(f"server:        {cp.server}")
        print(f"logs:          {cp.workdir}/*.log")
        print(f"kubeconfig:    {cp.kubeconfig}")
        print(f"\nexport KUBECONFIG={cp.kubeconfig}\nRunning; Ctrl-C to stop.", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        print("\nstopping control plane", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
