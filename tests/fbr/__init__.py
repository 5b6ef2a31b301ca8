"""Context vs foreground ratio: plan-context, fg trainers, FBR logging, the test-time context condition."""
