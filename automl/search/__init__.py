"""The architecture search: ask/tell searchers (Bayesian, random, initial), the GP and edit-distance
kernel, the search loop, and the store with its typed record schema. It never trains: whoever drives
the loop passes a batch trainer in."""
