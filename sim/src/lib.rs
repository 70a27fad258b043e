//! keel-sim: the deterministic cluster simulator (issue 4).
