//! Broker failover with real ZooKeeper (issue 5).
