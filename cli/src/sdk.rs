//! The AWS configuration of the commands that call AWS (`lookup --log-group`, `redrive`): the
//! SDK's default chain as the AWS CLI reads it (`AWS_ENDPOINT_URL` honoured), with the
//! command's `--region` and `--profile` on top.

use aws_config::{Region, SdkConfig};

/// The configuration; none when no Region is given or configured.
pub async fn load(region: Option<&str>, profile: Option<&str>) -> Option<SdkConfig> {
    let mut loader = trailwatch_aws::config_loader();
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    let sdk = loader.load().await;
    sdk.region().is_some().then_some(sdk)
}
