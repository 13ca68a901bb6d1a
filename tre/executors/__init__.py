"""Job executors: one interface (`tre.executors.base.Executor`), several backends."""
