//! keel-tests: end-to-end tests on real etcd, PostgreSQL and HAProxy (issues 3, 5, 6).
