"""klingmon's benchmarks: the real engine and simulator on a virtual clock, and more."""
