"""Jobs: admission, the state machine, output recording and the worker that runs them."""
