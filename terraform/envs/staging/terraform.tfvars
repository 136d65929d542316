# Your staging project and billing account (README, "Deploy to your project").
project_id      = "my-mlops-staging"
billing_account = "000000-000000-000000"
