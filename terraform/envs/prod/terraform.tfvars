# Your prod project and billing account (README, "Deploy to your project").
project_id      = "my-mlops-prod"
billing_account = "000000-000000-000000"
