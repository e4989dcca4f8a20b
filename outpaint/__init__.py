"""Outpainting of arbitrarily large periodic boxes: the 8-phase tile plan and its pencil
decomposition (plan), halo exchange over MPI ranks (mpi), resumable state and the HDF5 output
(writer), and the driver ``upsample_box`` (run) behind ``emulator upsample``."""
