"""Release plumbing the Cloud Build configs call: impersonation for Python steps, function deploys."""
