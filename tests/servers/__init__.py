"""Real test servers (Redmine) started by the test suite."""
