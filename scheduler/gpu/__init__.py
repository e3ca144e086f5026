"""GPU supply per node, fragmentation (FGD) and the expected-workload learner."""
