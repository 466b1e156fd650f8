//! `trailwatch lookup --log-group` against CloudWatch Logs on moto.
