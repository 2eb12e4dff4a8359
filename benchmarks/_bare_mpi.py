"""Baseline: a bare mpi4py master/worker loop, one no-op task per message, blocking receives."""
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
n = int(sys.argv[1])
if rank == 0:
    st = MPI.Status()
    t0 = time.perf_counter()
    sent = done = 0
    for w in range(1, size):
        comm.send(sent, dest=w, tag=1)
        sent += 1
    while done < n:
        comm.recv(source=MPI.ANY_SOURCE, tag=2, status=st)
        done += 1
        if sent < n:
            comm.send(sent, dest=st.Get_source(), tag=1)
            sent += 1
    dt = time.perf_counter() - t0
    for w in range(1, size):
        comm.send(None, dest=w, tag=1)
    print(f"{n / dt:.0f}")
else:
    while True:
        task = comm.recv(source=0, tag=1)
        if task is None:
            break
        comm.send(0.0, dest=0, tag=2)
