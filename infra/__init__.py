"""AWS CDK app for the community engagement stack: webhooks -> DynamoDB -> scores -> CRM."""
