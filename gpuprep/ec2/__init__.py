"""The EC2 instance itself: its type from the instance metadata service, and what each GPU instance type has."""
