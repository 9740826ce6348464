"""The networks, apart from any algorithm: ensembles of MLPs, CARE's encoder, MOORE's experts, PaCo's
parameter sets, Soft Modularization, BroNet, and the task-description embeddings."""
