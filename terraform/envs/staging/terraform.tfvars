# Your staging project and billing account (README, "Deploy to your project").
project_id      = "my-mlops-staging"
billing_account = "000000-000000-000000"
github          = { owner = "my-github-org", repository = "vertex-mlops" }
prod_project_id = "my-mlops-prod"
