//! The `ClbApi` trait: the CLB actions the deploy engine uses, as one seam. `ClbClient`
//! implements it over the real API 3.0 (signing, retries, token buckets, task polling); tests
//! can implement it in memory (for example over the emulator's core, without HTTP).

use crate::client::{ClbClient, Reply};
use crate::error::ClbError;
use crate::types::*;
use std::future::Future;

/// Result of a CLB action.
pub type ApiResult<T> = Result<T, ClbError>;

/// The CLB actions the deploy engine needs. Every method has the semantics of the
/// `ClbClient` method of the same name (pagination of Describe* done, batch actions chunked,
/// `*_and_wait` waiting for the task).
pub trait ClbApi: Send + Sync + 'static {
    /// The region the calls go to (resource descriptions of the Tag service name it).
    fn region(&self) -> &str;
    fn describe_load_balancers(
        &self,
        req: &DescribeLoadBalancersRequest,
    ) -> impl Future<Output = ApiResult<Vec<LoadBalancer>>> + Send;
    fn create_load_balancer_and_wait(
        &self,
        req: &CreateLoadBalancerRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send;
    fn delete_load_balancers(
        &self,
        req: &DeleteLoadBalancerRequest,
    ) -> impl Future<Output = ApiResult<Vec<Reply<Empty>>>> + Send;
    fn modify_load_balancer_attributes(
        &self,
        req: &ModifyLoadBalancerAttributesRequest,
    ) -> impl Future<Output = ApiResult<Reply<ModifyLoadBalancerAttributesResponse>>> + Send;
    fn describe_listeners(
        &self,
        req: &DescribeListenersRequest,
    ) -> impl Future<Output = ApiResult<Vec<Listener>>> + Send;
    fn create_listener(
        &self,
        req: &CreateListenerRequest,
    ) -> impl Future<Output = ApiResult<Reply<CreateListenerResponse>>> + Send;
    fn modify_listener(
        &self,
        req: &ModifyListenerRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    fn delete_load_balancer_listeners(
        &self,
        req: &DeleteLoadBalancerListenersRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send;
    fn create_rule(
        &self,
        req: &CreateRuleRequest,
    ) -> impl Future<Output = ApiResult<Reply<CreateRuleResponse>>> + Send;
    fn delete_rule(
        &self,
        req: &DeleteRuleRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    fn modify_rule(
        &self,
        req: &ModifyRuleRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    fn modify_domain_attributes(
        &self,
        req: &ModifyDomainAttributesRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    fn describe_targets(
        &self,
        req: &DescribeTargetsRequest,
    ) -> impl Future<Output = ApiResult<Vec<ListenerBackend>>> + Send;
    fn batch_register_targets(
        &self,
        req: &BatchTargetsRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send;
    fn batch_deregister_targets(
        &self,
        req: &BatchTargetsRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send;
    fn batch_modify_target_weight(
        &self,
        req: &BatchModifyTargetWeightRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send;
    fn manual_rewrite(
        &self,
        req: &ManualRewriteRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    fn delete_rewrite(
        &self,
        req: &DeleteRewriteRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    fn upload_certificate(
        &self,
        req: &UploadCertificateRequest,
    ) -> impl Future<Output = ApiResult<String>> + Send;
    fn describe_certificates(
        &self,
        req: &DescribeCertificatesRequest,
    ) -> impl Future<Output = ApiResult<Vec<CertificateDetail>>> + Send;
    /// The account's CLB quotas in this region.
    fn describe_quota(&self) -> impl Future<Output = ApiResult<Vec<Quota>>> + Send;
    /// VPC DescribeSubnets by id: the subnets that exist (their VPC). An implementation
    /// without a VPC service answers none.
    fn describe_subnets(
        &self,
        subnet_ids: &[String],
    ) -> impl Future<Output = ApiResult<Vec<Subnet>>> + Send {
        let _ = subnet_ids;
        async { Ok(Vec::new()) }
    }
    /// Tag ModifyResourceTags: add or change tags of an existing resource.
    fn modify_resource_tags(
        &self,
        req: &ModifyResourceTagsRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send;
    /// Delete a certificate of the SSL service (`false`: the service refused).
    fn delete_certificate(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = ApiResult<bool>> + Send;
    /// Wait for an async task (by the RequestId of the call that started it) to succeed.
    fn wait_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = ApiResult<DescribeTaskStatusResponse>> + Send;
}

/// Each method delegates to the inherent `ClbClient` method of the same name.
macro_rules! delegate {
    ($($name:ident($req:ty) -> $out:ty;)*) => {
        impl ClbApi for ClbClient {
            fn region(&self) -> &str {
                ClbClient::region(self)
            }
            $(
                fn $name(&self, req: &$req) -> impl Future<Output = ApiResult<$out>> + Send {
                    ClbClient::$name(self, req)
                }
            )*
            fn wait_task(
                &self,
                task_id: &str,
            ) -> impl Future<Output = ApiResult<DescribeTaskStatusResponse>> + Send {
                ClbClient::wait_task(self, task_id)
            }
            fn delete_certificate(
                &self,
                certificate_id: &str,
            ) -> impl Future<Output = ApiResult<bool>> + Send {
                ClbClient::delete_certificate(self, certificate_id)
            }
            fn describe_quota(&self) -> impl Future<Output = ApiResult<Vec<Quota>>> + Send {
                ClbClient::describe_quota(self)
            }
            fn describe_subnets(
                &self,
                subnet_ids: &[String],
            ) -> impl Future<Output = ApiResult<Vec<Subnet>>> + Send {
                ClbClient::describe_subnets(self, subnet_ids)
            }
        }
    };
}

delegate! {
    describe_load_balancers(DescribeLoadBalancersRequest) -> Vec<LoadBalancer>;
    create_load_balancer_and_wait(CreateLoadBalancerRequest) -> Vec<String>;
    delete_load_balancers(DeleteLoadBalancerRequest) -> Vec<Reply<Empty>>;
    modify_load_balancer_attributes(ModifyLoadBalancerAttributesRequest)
        -> Reply<ModifyLoadBalancerAttributesResponse>;
    describe_listeners(DescribeListenersRequest) -> Vec<Listener>;
    create_listener(CreateListenerRequest) -> Reply<CreateListenerResponse>;
    modify_listener(ModifyListenerRequest) -> Reply<Empty>;
    delete_load_balancer_listeners(DeleteLoadBalancerListenersRequest) -> Vec<String>;
    create_rule(CreateRuleRequest) -> Reply<CreateRuleResponse>;
    delete_rule(DeleteRuleRequest) -> Reply<Empty>;
    modify_rule(ModifyRuleRequest) -> Reply<Empty>;
    modify_domain_attributes(ModifyDomainAttributesRequest) -> Reply<Empty>;
    describe_targets(DescribeTargetsRequest) -> Vec<ListenerBackend>;
    batch_register_targets(BatchTargetsRequest) -> Vec<String>;
    batch_deregister_targets(BatchTargetsRequest) -> Vec<String>;
    batch_modify_target_weight(BatchModifyTargetWeightRequest) -> Vec<String>;
    manual_rewrite(ManualRewriteRequest) -> Reply<Empty>;
    delete_rewrite(DeleteRewriteRequest) -> Reply<Empty>;
    upload_certificate(UploadCertificateRequest) -> String;
    describe_certificates(DescribeCertificatesRequest) -> Vec<CertificateDetail>;
    modify_resource_tags(ModifyResourceTagsRequest) -> Reply<Empty>;
}
