"""Architectures as data: graphs (torch-free), morphisms with their weight rules, the one builder to
torch, weight inheritance and the memory estimate. The ground floor: it imports nothing else of automl."""
