"""HTTP plumbing shared by every router: error bodies, the body-size limit, common dependencies."""
